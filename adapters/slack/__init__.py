"""Slack: the bolt app and its routes (`app`), event listeners (`listeners`), the answer surface
(`surface`), OAuth installations (`install`), `/setkey` (`setkey`) and Markdown to mrkdwn."""
