from ragops_ingestion.app import main

main()
