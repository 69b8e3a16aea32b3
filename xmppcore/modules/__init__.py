"""Feature modules: one XEP/RFC area per file (see ``xmppcore.server.module_api``)."""
