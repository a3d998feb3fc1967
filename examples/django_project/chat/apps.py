from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "examples.django_project.chat"
    label = "chat"
    verbose_name = "Chat"
