# common.gp — terminal and style shared by every kvtrace figure.
# Variables (gnuplot -e): out (output file), term ("pngcairo", "svg" or "dumb"),
# width and height in pixels (optional).
if (!exists("term")) term = "pngcairo"
if (!exists("width")) width = 1100
if (!exists("height")) height = 650
if (term eq "svg") {
    set terminal svg size width,height dynamic enhanced font "Sans,12" background "white"
} else {
    if (term eq "dumb") {
        set terminal dumb size 160,50 aspect 2,1
    } else {
        set terminal pngcairo size width,height enhanced font "Sans,11" background "white"
    }
}
set output out
set grid lc rgb "#dddddd"
set key outside right top noreverse samplen 2 spacing 1.1
set border lw 1.2
# One colour per policy, the same in every figure; oracles are dashed.
colour(name) = name eq "h2o" ? 0x1f77b4 : name eq "a2sf" ? 0xd62728 : name eq "vatp" ? 0x2ca02c : \
               name eq "knorm" ? 0x9467bd : name eq "window" ? 0x8c564b : name eq "streaming" ? 0xe377c2 : \
               name eq "tova" ? 0xff7f0e : name eq "snapkv" ? 0x17becf : name eq "random" ? 0x7f7f7f : \
               name eq "ideal" ? 0x000000 : name eq "optimal" ? 0x555555 : name eq "full" ? 0xaaaaaa : 0xbcbd22
dash(name) = (name eq "ideal" || name eq "optimal" || name eq "full") ? 2 : 1
