"""One module per paper method; notebooks call these and only plot."""
