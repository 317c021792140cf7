"""The smallest Django project: one view, settings in code, no database.

`application` is its WSGI callable; `bench/djangohello/hello.wsgi` serves it
(with bench/ and Django's packages on the Python path).
"""

import django
from django.conf import settings
from django.http import HttpResponse
from django.urls import path

BODY = "Hello from Django inside wasgi!\n"


def hello(request):
    return HttpResponse(BODY, content_type="text/plain; charset=utf-8")


urlpatterns = [path("", hello)]

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only-not-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[
            "django.middleware.security.SecurityMiddleware",
            "django.middleware.common.CommonMiddleware",
        ],
        DATABASES={},
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402  (after settings)

application = get_wsgi_application()
