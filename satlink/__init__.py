"""satlink: replay picture transfers over satellite short-message links.

>>> import satlink
>>> satlink.__version__
'0.1.0'
"""

__version__ = "0.1.0"
