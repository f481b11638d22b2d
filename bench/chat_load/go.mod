module chatload

go 1.19
