import sys

from atomlens.cli import main

sys.exit(main())
