# The image the compose file's worker and dashboard run: the package and its CLI.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY adamz ./adamz
COPY studies ./studies
COPY search_spaces ./search_spaces
RUN pip install --no-cache-dir .
ENTRYPOINT ["adamz-search"]
CMD ["--help"]
