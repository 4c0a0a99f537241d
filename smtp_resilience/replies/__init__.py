"""What an SMTP reply means: the knowledge base and the classifier built on it.

Pure data and functions, importing nothing else of the library: :mod:`.commands` (the stages and
the replies each can get), :mod:`.codes` (basic reply codes), :mod:`.enhanced` (RFC 3463 status
codes), :mod:`.hints` ("try again in N seconds"), :mod:`.overrides` (rules that reclassify a reply)
and :mod:`.classification`, which turns one reply into a :class:`~.classification.Verdict`.
"""
