"""The project's routes: Django's ``urlpatterns`` for HTTP, ``websocket_urlpatterns`` for the WebSocket."""

from django.contrib.auth import views as auth_views
from django.urls import path as http_path

from duck_ws_sync.urls import path

from .chat import views
from .chat.sockets import ChatSocket

urlpatterns = [
    http_path("", views.chat, name="chat"),
    http_path("signup/", views.signup, name="signup"),
    http_path("login/", auth_views.LoginView.as_view(), name="login"),
    http_path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]

websocket_urlpatterns = [
    path("/ws/chat", ChatSocket, name="chat"),
]
