import sys

from minimner.cli import main

sys.exit(main())
