; Column sums, column maxima and the grand total of a 256x16 int32 matrix (default chip).
; X streams through two scratchpad buffers of 64 rows (double buffering): the load unit
; fills one buffer while the compute unit reduces the other. "Buffer free" tokens (C->L)
; are primed by two SYNCs; each LOOP iteration handles a pair of tiles, so the buffers
; alternate without offsets on the SRAM rows (d_dst = d_src1 = 0).
.config default
.input  X,     addr=0x00000, shape=(256, 16), dtype=int32
.output SUMS,  addr=0x10000, shape=(16,), dtype=int32
.output MAXES, addr=0x10040, shape=(16,), dtype=int32
.output TOTAL, addr=0x10080, shape=(1,), dtype=int32

.const TILE = 64
.const ROW_BYTES = 16 * 4
.const TILE_BYTES = TILE * ROW_BYTES
.const BUF0 = 0
.const BUF1 = TILE

    move    dst=acc:1, count=1, fn=fill, imm=0x80000000          ; running max starts at -2^31
    sync    unit=compute, push_prev                              ; buffer 0 is free
    sync    unit=compute, push_prev                              ; buffer 1 is free
    loop    count=2, body=6, d_dram=2 * TILE_BYTES
    load    sram=sp:BUF0, dram=0x00000, stride=ROW_BYTES, rows=TILE, cols=16, fmt=x32, pop_next, push_next
    reduce  dst=acc:0, src1=sp:BUF0, count=TILE, fn=sum, axis=rows, dtype=i32, acc=1, pop_prev
    reduce  dst=acc:1, src1=sp:BUF0, count=TILE, fn=max, axis=rows, dtype=i32, acc=1, push_prev
    load    sram=sp:BUF1, dram=TILE_BYTES, stride=ROW_BYTES, rows=TILE, cols=16, fmt=x32, pop_next, push_next
    reduce  dst=acc:0, src1=sp:BUF1, count=TILE, fn=sum, axis=rows, dtype=i32, acc=1, pop_prev
    reduce  dst=acc:1, src1=sp:BUF1, count=TILE, fn=max, axis=rows, dtype=i32, acc=1, push_prev
    reduce  dst=acc:2, src1=acc:0, count=1, fn=sum, axis=lanes, dtype=i32, push_next
    store   sram=acc:0, dram=0x10000, stride=ROW_BYTES, rows=3, cols=16, fmt=x32, pop_prev
    halt
