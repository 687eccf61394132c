import sys

from w365.interfaces.cli import main

sys.exit(main())
