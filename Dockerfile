# One image for every process of the system; the compose file picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    QUARTIER_ENV=production \
    QUARTIER_VAR_DIR=/var/lib/quartier

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY shared ./shared
COPY services ./services
RUN pip install -c constraints.txt . && useradd --system --home /var/lib/quartier quartier \
    && mkdir -p /var/lib/quartier && chown quartier /var/lib/quartier

USER quartier
EXPOSE 5001 5002 5003
CMD ["quartier", "--help"]
