"""Files: written all at once (atomic.py) and tables read one way (tables.py).

Below every other layer, so accuracy/, batch/ and train/ share them without importing each other.
"""

from textclass.fileio.atomic import atomic_folder, atomic_write, write_json

__all__ = ["atomic_folder", "atomic_write", "write_json"]
