# value_norm.gp — value L1 norm by token position, one line per layer, the
# attention sinks marked (VATP: sinks have small value norms).
# Data: a block per layer, columns: position  value_l1_norm  sink(0/1)
# Variables: data, out, title, layers (number of layers).
load "scripts/common.gp"
set title title noenhanced
set xlabel "token position i"
set ylabel "value L1 norm ||v_i||_1 (mean over kv heads)"
set key title "layer"
plot for [l=0:layers-1] data index l using 1:2 with lines lw 1.5 title sprintf("%d", l), \
     for [l=0:layers-1] data index l using 1:($3 > 0 ? $2 : 1/0) with points pt 6 ps 1.6 lc rgb "black" \
         title (l == 0 ? "sink token" : "")
