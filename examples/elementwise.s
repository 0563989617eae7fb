; Leaky ReLU, y = x < 0 ? 0.1 * x : x, over a 256x16 fp32 matrix on the default chip.
; A hardware LOOP walks 16 tiles of 16 rows; each iteration moves the DRAM addresses by
; one tile (d_dram) and every SRAM operand by 16 rows (d_dst, d_src1..3), so tiles never
; share rows: the load of tile i+1 and the store of tile i-1 overlap the work on tile i,
; ordered by tokens (load -L->C-> compute -C->S-> store).
.config default
.input  X, addr=0x00000, shape=(256, 16), dtype=float32
.output Y, addr=0x10000, shape=(256, 16), dtype=float32

.const TILE = 16
.const ROW_BYTES = 16 * 4
.const TILE_BYTES = TILE * ROW_BYTES
.const COND = 2048               ; scratchpad rows of the x < 0 masks

    loop    count=16, body=5, d_dram=TILE_BYTES, d_dst=TILE, d_src1=TILE, d_src2=TILE, d_src3=TILE
    load    sram=sp:0, dram=0x00000, stride=ROW_BYTES, rows=TILE, cols=16, fmt=x32, push_next
    binary  dst=acc:0, src1=sp:0, count=TILE, fn=mul, dtype=f32, step1=1, imm_mode=1, imm=f32(0.1), pop_prev
    binary  dst=sp:COND, src1=sp:0, count=TILE, fn=cmplt, dtype=f32, step1=1, imm_mode=1, imm=f32(0.0)
    ternary dst=acc:0, src1=sp:COND, src2=acc:0, src3=sp:0, count=TILE, fn=where, dtype=f32, step1=1, step2=1, step3=1, push_next
    store   sram=acc:0, dram=0x10000, stride=ROW_BYTES, rows=TILE, cols=16, fmt=x32, pop_prev
    halt
