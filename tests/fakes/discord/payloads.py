"""Discord objects as the gateway and REST API send them, built for the fake Discord.

Only the fields discord.py reads are filled in; ids are snowflake strings, like Discord's.
"""

from __future__ import annotations

from typing import Any

TIMESTAMP = "2026-11-21T10:00:00.000000+00:00"
MEMBER_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 16)  # view, send, read history


def user(user_id: str, name: str, *, bot: bool = False) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": user_id,
        "username": name,
        "discriminator": "0",
        "global_name": name,
        "avatar": None,
    }
    if bot:
        payload["bot"] = True
    return payload


def text_channel(channel_id: str, guild_id: str, name: str = "general") -> dict[str, Any]:
    return {
        "id": channel_id,
        "type": 0,
        "guild_id": guild_id,
        "name": name,
        "position": 0,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
    }


def forum_channel(channel_id: str, guild_id: str, name: str) -> dict[str, Any]:
    """A forum channel (type 15): people open posts in it, each a thread with a starter message."""
    return {
        **text_channel(channel_id, guild_id, name),
        "type": 15,
        "available_tags": [],
        "default_reaction_emoji": None,
        "default_sort_order": None,
        "default_forum_layout": 0,
        "flags": 0,
    }


def dm_channel(channel_id: str, recipient: dict[str, Any]) -> dict[str, Any]:
    """A direct message channel between a person and (here) someone other than the bot."""
    return {"id": channel_id, "type": 1, "recipients": [recipient], "last_message_id": None}


def thread(
    thread_id: str, parent: dict[str, Any], owner_id: str, name: str, archive_minutes: int
) -> dict[str, Any]:
    return {
        "id": thread_id,
        "type": 11,  # public thread
        "guild_id": parent["guild_id"],
        "parent_id": parent["id"],
        "owner_id": owner_id,
        "name": name,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": archive_minutes,
            "archive_timestamp": TIMESTAMP,
            "locked": False,
        },
    }


def role(role_id: str, name: str, position: int, *, managed: bool = False) -> dict[str, Any]:
    return {
        "id": role_id,
        "name": name,
        "permissions": str(MEMBER_PERMISSIONS),
        "position": position,
        "color": 0,
        "hoist": False,
        "managed": managed,
        "mentionable": False,
        "flags": 0,
    }


def member(permissions: int, of_user: dict[str, Any] | None = None) -> dict[str, Any]:
    """A guild member as interactions carry it: with the permissions Discord resolved."""
    payload: dict[str, Any] = {
        "roles": [],
        "joined_at": TIMESTAMP,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "permissions": str(permissions),
    }
    if of_user is not None:
        payload["user"] = of_user
    return payload


def guild_create(
    guild_id: str,
    name: str,
    members: dict[str, int],
    channels: list[dict[str, Any]],
    bot_user: dict[str, Any],
    bot_role_id: str,
) -> dict[str, Any]:
    return {
        "id": guild_id,
        "name": name,
        "icon": None,
        "owner_id": next(iter(members), bot_user["id"]),
        "unavailable": False,
        "member_count": len(members) + 1,
        "large": False,
        "features": [],
        "roles": [
            role(guild_id, "@everyone", 0),
            role(bot_role_id, bot_user["username"], 1, managed=True),
        ],
        "channels": channels,
        "threads": [],
        "members": [
            {
                "user": bot_user,
                "roles": [bot_role_id],
                "joined_at": TIMESTAMP,
                "deaf": False,
                "mute": False,
                "flags": 0,
            }
        ],
        "voice_states": [],
        "presences": [],
        "emojis": [],
        "stickers": [],
        "joined_at": TIMESTAMP,
    }


def application(application_id: str, owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": application_id,
        "name": owner["username"],
        "icon": None,
        "description": "",
        "bot_public": True,
        "bot_require_code_grant": False,
        "owner": owner,
        "team": None,
        "verify_key": "0" * 64,
        "flags": 0,
        "summary": "",
    }


def message(
    message_id: str,
    channel_id: str,
    guild_id: str | None,
    author: dict[str, Any],
    content: str,
) -> dict[str, Any]:
    return {
        "id": message_id,
        "channel_id": channel_id,
        "guild_id": guild_id,
        "author": author,
        "content": content,
        "timestamp": TIMESTAMP,
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
        "flags": 0,
        "components": [],
    }
