from ragops_privacy.app import main

main()
