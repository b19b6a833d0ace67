"""chat_app: anonymous, server-issued, resumable and resettable chat sessions."""
