module concbench

go 1.19
