; C = A @ W on the tiny chip (a 4x4 int8 array): 8x4 int8 inputs, 4x4 int8 weights,
; 8x4 int32 results. The three units hand work along with dependency tokens:
; load --(L->C)--> compute --(C->S)--> store.
.config tiny
.input  A, addr=0x000, shape=(8, 4), dtype=int8
.output C, addr=0x200, shape=(8, 4), dtype=int32
; W = [[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1], [1, -1, 2, -2]]
.data   0x100, int8, 1, 0, 0, 1,  0, 1, 0, 1,  0, 0, 1, 1,  1, -1, 2, -2

.const N = 4
.const ROWS = 8
.const W_ROW = 0       ; scratchpad rows 0..3: the weights
.const A_ROW = N       ; scratchpad rows 4..11: the inputs

    load   sram=sp:W_ROW, dram=0x100, stride=N, rows=N, cols=N, fmt=i8
    load   sram=sp:A_ROW, dram=0x000, stride=N, rows=ROWS, cols=N, fmt=i8, push_next
    matmul dst=0, inp=A_ROW, wgt=W_ROW, rows=ROWS, acc=0, dtype=i8, pop_prev, push_next
    store  sram=acc:0, dram=0x200, stride=4 * N, rows=ROWS, cols=N, fmt=x32, pop_prev
    halt
