module warren/warrentest

go 1.19
