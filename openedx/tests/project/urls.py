"""No views: requests to the test project only serve to start the per-process refresher."""

urlpatterns = []
