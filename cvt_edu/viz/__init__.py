"""Every figure of the course, and the Markdown tables: data and trained models (:mod:`.plots`), patches
(:mod:`.patches`), positional embeddings (:mod:`.positional`), attention maps (:mod:`.attention`), the
convolutional token embedding (:mod:`.embedding`), translation experiments (:mod:`.shift`), attention cost
(:mod:`.cost`), Swin's windows (:mod:`.windows`), token-map pyramids and PVT's reduction (:mod:`.pyramid`),
pretrained predictions (:mod:`.transfer`); :func:`.tables.markdown_table` lays out every table. Each figure
function takes ``lang=`` and gets its text from :mod:`cvt_edu.course.i18n`."""
