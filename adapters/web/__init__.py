"""The local web chat: routes and the socket (`routes`), the answer surface (`surface`), safe
Markdown rendering (`markdown`) and the page's assets (`static/`)."""
