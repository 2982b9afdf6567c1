"""A minimal Django project served through a Cranker router (no database)."""
import os

SECRET_KEY = "test only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "crank_django_project.urls"
WSGI_APPLICATION = "crank_django_project.wsgi.application"
# the crank app last, so its ready() runs when every other app is ready
INSTALLED_APPS = ["crank_django_project.crank"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
DATABASES: dict = {}
USE_TZ = True

# Where this project is reachable through Cranker: the router URLs and the route (first path
# segment). With no routers, nothing connects.
CRANK_ROUTERS = os.environ.get("CRANK_ROUTERS", "").split()
CRANK_ROUTE = "django-svc"
