"""The administration blueprint; its pages live in the ``admin_*`` modules."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")
