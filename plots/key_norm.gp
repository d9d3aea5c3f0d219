# key_norm.gp — key L2 norm against the attention a token receives (one head):
# the K-norm paper's finding is a negative relation (low norm, high attention).
# Data columns: key_l2_norm  mean_attention_per_row  position.
# Variables: data, out, title ("|" between lines), logformat.
load "scripts/common.gp"
set title lines(title) noenhanced
unset key
set xlabel "key L2 norm ||k_i||_2"
set ylabel "mean attention received per row"
set logscale y
set format y logformat
set palette defined (0 "#fde725", 0.5 "#21918c", 1 "#440154")
set cblabel "token position i (point colour)"
plot data using 1:2:3 with points pt 7 ps 0.6 lc palette title "token (colour: position)"
