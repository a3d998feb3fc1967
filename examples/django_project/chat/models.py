from django.conf import settings
from django.db import models


class Message(models.Model):
    """A line said in the chat."""

    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_messages")
    text = models.TextField()
    sent = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.author}: {self.text}"

    def as_json(self):
        """What the chat's clients get: ``{"type": "chat", "id", "name", "text", "sent"}``."""
        return {
            "type": "chat",
            "id": self.pk,
            "name": self.author.get_username(),
            "text": self.text,
            "sent": self.sent.isoformat(),
        }
