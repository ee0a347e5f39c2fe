"""answerbot: a self-hosted answer bot for Slack, Discord and a local web chat.

`bot/` is the shared async core (knowledge, answers, history, keys, the streaming editor);
`adapters/` translate platform events into core calls. The core never imports the adapters.
"""

__version__ = "0.1.0"
