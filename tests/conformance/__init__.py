"""RFC 6120/6121 conformance: the same scenarios run against xmppcore and the ejabberd reference.

Scenarios are data (``scenarios/*.toml``, format in ``scenarios/README.md``); ``runner.py``
runs one against one server with the raw client; ``test_conformance.py`` makes each
scenario × server a pytest case; ``python -m tests.conformance --report`` prints the table.
"""
