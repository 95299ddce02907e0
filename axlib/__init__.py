"""axlib: the library behind the axrepro reproducibility book.

Modules (see DESIGN.md): ``paths`` (every location), ``config`` (device, threads, seeds),
``data`` (datasets rooted at ``AXLIB_DATA``), ``models`` (networks, pretrained loaders, zoo),
``quant`` (fixed-point quantization), ``runs`` (raw-run store), ``sweep`` (grid runner),
``claims`` (paper-claim checks), ``repro`` (papermill runner + book build), ``plotting``.
"""

__version__ = "0.1.0"
