"""Pure codecs between wire formats and the types in ``modelserver.types``.

Each decoder is total: any input gives a request or raises ``InvalidInput``.
"""
