import sys

from w365.cli import main

sys.exit(main())
