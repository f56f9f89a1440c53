"""`python -m bench`: the table of DESIGN.md's figures, printed and written to bench/last.md."""

from bench.run import main

raise SystemExit(main())
