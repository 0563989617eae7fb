; y = relu(2 * x + 0.5) on fp32 rows of the default chip (16 lanes): a FILL makes the bias
; row, BINARY scales by an immediate and adds the bias row (broadcast with step2=0).
.config default
.input  X, addr=0x0000, shape=(4, 16), dtype=float32
.output Y, addr=0x1000, shape=(4, 16), dtype=float32

.const ROWS = 4
.const ROW_BYTES = 16 * 4
.const BIAS = 8        ; accumulator row holding 0.5 in every lane

    move   dst=acc:BIAS, count=1, fn=fill, imm=f32(0.5)
    load   sram=acc:0, dram=0x0000, stride=ROW_BYTES, rows=ROWS, cols=16, fmt=x32, push_next
    binary dst=acc:0, src1=acc:0, count=ROWS, fn=mul, dtype=f32, step1=1, imm_mode=1, imm=f32(2.0), pop_prev
    binary dst=acc:0, src1=acc:0, src2=acc:BIAS, count=ROWS, fn=add, dtype=f32, step1=1, step2=0
    unary  dst=acc:0, src1=acc:0, count=ROWS, fn=relu, dtype=f32, step1=1, push_next
    store  sram=acc:0, dram=0x1000, stride=ROW_BYTES, rows=ROWS, cols=16, fmt=x32, pop_prev
    halt
