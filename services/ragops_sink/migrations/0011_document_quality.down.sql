DROP VIEW IF EXISTS document_quality;
