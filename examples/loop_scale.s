; Y = 3 * X for a 64x16 int32 matrix, as four 16-row tiles in a hardware LOOP. Each
; iteration moves DRAM addresses by d_dram bytes and SRAM rows by d_dst/d_src1 rows, so
; every tile has its own scratchpad rows and the load of tile i+1 overlaps the work on i.
.config default
.input  X, addr=0x00000, shape=(64, 16), dtype=int32
.output Y, addr=0x10000, shape=(64, 16), dtype=int32

.const TILE = 16                 ; rows per tile
.const TILE_BYTES = TILE * 16 * 4

    loop   count=4, body=3, d_dram=TILE_BYTES, d_dst=TILE, d_src1=TILE
body:
    load   sram=sp:0, dram=0x00000, stride=64, rows=TILE, cols=16, fmt=x32, push_next
    binary dst=sp:0, src1=sp:0, count=TILE, fn=mul, dtype=i32, step1=1, imm_mode=1, imm=3, pop_prev, push_next
    store  sram=sp:0, dram=0x10000, stride=64, rows=TILE, cols=16, fmt=x32, pop_prev
    halt
