"""
hastack, the Salt extension: its execution modules (``modules/``) and state modules
(``states/``) reach Salt's loader through the ``salt.loader`` entry point, which names
this package; Salt looks for a directory per loader type in it. The pure logic the
modules share is the ``hastack_utils`` package.
"""

try:
    from importlib.metadata import PackageNotFoundError, version
except ImportError:  # pragma: no cover
    PackageNotFoundError, version = Exception, None

try:
    __version__ = version("saltext.hastack")
except PackageNotFoundError:  # running from a checkout, not installed
    __version__ = "0.0.0+checkout"
