"""The HTTP side: the chat page, for logged-in users, and the sign-up form."""

from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.shortcuts import redirect, render


@login_required
def chat(request):
    """The chat page; its script opens the WebSocket (``sockets.ChatSocket``) with the session cookie."""
    return render(request, "chat/chat.html")


def signup(request):
    """Create an account with Django's ``UserCreationForm``, log it in, and go to the chat."""
    if request.method == "POST":
        form = UserCreationForm(request.POST)
        if form.is_valid():
            login(request, form.save())
            return redirect("chat")
    else:
        form = UserCreationForm()
    return render(request, "registration/signup.html", {"form": form})
