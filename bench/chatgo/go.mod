module chatgo

go 1.19
