from django.urls import path

from . import views

urlpatterns = [
    path("form", views.form, name="form"),
    path("upload", views.upload, name="upload"),
    path("session", views.session_counter, name="session"),
    path("redirect", views.go_elsewhere, name="redirect"),
    path("stream", views.stream, name="stream"),
    path("whoami", views.whoami, name="whoami"),
]
