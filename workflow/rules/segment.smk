# rules of this stage are added by its issue
