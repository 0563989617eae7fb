"""The chip's Amaranth RTL: a core that executes .dzn programs cycle for cycle like the simulator.

`rtl.core.Core` is the chip; `rtl.testbench.run_programs` runs programs on it in
Amaranth's simulator; `rtl.export` writes Verilog; `rtl.cocotb_bench` runs that Verilog
under Verilator or Icarus; `rtl.synth` places and routes it. See rtl/README.md.
"""
