"""Views exercising what a tunnel must carry: CSRF forms, uploads, sessions, redirects, streams."""
import hashlib
import threading

from django import forms
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect

#: Tests hold the streaming view after its first line until they set this.
stream_gate = threading.Event()


class GreetingForm(forms.Form):
    name = forms.CharField(max_length=50)
    age = forms.IntegerField(min_value=0)


def form(request):
    if request.method == "POST":
        filled = GreetingForm(request.POST)
        if not filled.is_valid():
            return JsonResponse({"errors": filled.errors}, status=400)
        data = filled.cleaned_data
        return HttpResponse(f"hello {data['name']}, {data['age']}")
    return HttpResponse(
        f'<form method="post"><input type="hidden" name="csrfmiddlewaretoken" '
        f'value="{get_token(request)}">{GreetingForm().as_p()}<button>Send</button></form>'
    )


def upload(request):
    if request.method != "POST":
        return HttpResponse(status=405)
    uploaded = request.FILES["file"]
    digest = hashlib.sha256()
    for chunk in uploaded.chunks():
        digest.update(chunk)
    return JsonResponse({"filename": uploaded.name, "size": uploaded.size,
                         "sha256": digest.hexdigest(), "note": request.POST.get("note")})


def session_counter(request):
    request.session["visits"] = request.session.get("visits", 0) + 1
    return JsonResponse({"visits": request.session["visits"]})


def go_elsewhere(request):
    return redirect("form")


def stream(request):
    def lines():
        yield "line 0\n"
        stream_gate.wait(20)
        for i in range(1, 5):
            yield f"line {i}\n"

    return StreamingHttpResponse(lines(), content_type="text/plain")


def whoami(request):
    return JsonResponse({"remote_addr": request.META.get("REMOTE_ADDR"),
                         "scheme": request.scheme, "path": request.path,
                         "uri": request.build_absolute_uri()})
