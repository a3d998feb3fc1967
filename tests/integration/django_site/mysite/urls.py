from chat import views
from django.urls import path as http_path

from duck_ws_sync.urls import path

urlpatterns = [
    http_path("count/<str:kind>", views.count),
]

websocket_urlpatterns = [
    path("/ws/sync", views.SyncChat),
    path("/ws/async", views.AsyncChat),
    path("/ws/idle", views.Idle),
]
