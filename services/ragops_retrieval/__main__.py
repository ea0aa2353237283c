from ragops_retrieval.app import main

main()
