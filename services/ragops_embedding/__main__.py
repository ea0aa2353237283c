from ragops_embedding.app import main

main()
