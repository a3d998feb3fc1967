from django.db import models


class Message(models.Model):
    kind = models.CharField(max_length=10)
    user = models.CharField(max_length=150)
    text = models.TextField()
