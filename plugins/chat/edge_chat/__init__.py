"""edge-chat: the live-room chat plugin (docs/messages.md, "Live-room chat")."""
