from django.urls import include, path

# The router passes the whole path, route included: the project's URLs live under /<route>/.
urlpatterns = [path("django-svc/", include("crank_django_project.crank.urls"))]
