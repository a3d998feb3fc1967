"""The project's routes, as Duck reads them (``URLPATTERNS_MODULE``).

Routes to ``duck_ws_sync.WebSocketView`` subclasses are served by
duck_ws_sync; the others by Duck.
"""

from duck.urls import path

from . import views

urlpatterns = [
    path("/", views.home, name="home", methods=["GET"]),
    path("/api/ping", views.ping, name="ping", methods=["GET"]),
    path("/api/hello", views.hello, name="hello", methods=["GET"]),
    path("/ws/chat", views.ChatSocket, name="chat"),
    path("/ws/myws", views.MyWebSocket, name="mywebsocket"),
    path("/ws/notifications", views.NotificationSocket, name="notifications"),
    path("/ws/request/<room>", views.RequestInfo, name="request-info"),
    path("/ws/echo", views.EchoSocket, name="echo"),
    path("/ws/members", views.MembersOnly, name="members"),
]
