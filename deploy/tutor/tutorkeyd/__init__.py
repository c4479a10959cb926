"""tutor-contrib-keyd: the Tutor plugin that runs keyd and plugs it into Open edX."""
