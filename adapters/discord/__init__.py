"""Discord: the client, its supervision and start-up (`client`), slash commands and buttons
(`commands`) and the answer surface (`surface`)."""
